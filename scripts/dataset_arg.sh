# Sourced by run_1p.sh and run_8p.sh: the dataset folder from the first argument (when it
# is not a flag) or $DATA_DIR, checked, else one error line and exit 2.
# take_dataset_dir SCRIPT_NAME "$@"  sets data_dir, and data_args_used (0 or 1: how many
#                                    arguments the caller should shift).
take_dataset_dir() {
  local script="$1"
  shift
  data_dir="${DATA_DIR:-}"
  data_args_used=0
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then data_dir="$1"; data_args_used=1; fi
  if [ -z "$data_dir" ]; then
    echo "error: no dataset; usage: bash scripts/$script DATA_DIR [flags...] (or set DATA_DIR)" >&2
    exit 2
  fi
  if [ ! -d "$data_dir" ]; then
    echo "error: dataset dir $data_dir does not exist; pass the folder of TFRecord shards" >&2
    exit 2
  fi
}
