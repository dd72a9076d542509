"""Running the project's command lines as a user does, for the end-to-end tests."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600


def _env(extra):
    env = dict(os.environ, RANK_SIZE="1", RANK_ID="0")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the programs must be quiet on their own
    env.update(extra)
    return env


def _file_size_limit(size):
    """preexec_fn: a real RLIMIT_FSIZE (what prlimit --fsize sets) on the child; Python
    ignores SIGXFSZ, so its writes past ``size`` bytes fail with EFBIG."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def _run(command, options):
    """Runs ``command`` from the repository root (see run_python for ``options``)."""
    kwargs = dict(cwd=ROOT, env=_env(options.get("env", {})), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, universal_newlines=True)
    if options.get("fsize"):
        kwargs["preexec_fn"] = _file_size_limit(options["fsize"])
    if options.get("background"):
        return subprocess.Popen(command, **kwargs)
    return subprocess.run(command, timeout=TIMEOUT_S, **kwargs)


def run_python(script, *args, **options):
    """Runs ``python script args`` from the repository root; ``background=True`` returns
    the Popen instead of waiting; ``fsize=N`` limits every file it writes to N bytes;
    ``env`` adds environment variables."""
    return _run([sys.executable, os.path.join(ROOT, script)] + list(args), options)


def run_module(module, *args, **options):
    """``python -m module args``, as run_python runs a script."""
    return _run([sys.executable, "-m", module] + list(args), options)


def run_bash(script, *args, **env):
    """Runs ``bash scripts/<script> args`` with extra environment variables."""
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script)] + list(args),
                          cwd=ROOT, env=_env(env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT_S)


def single_error_line(out):
    """The one 'error:' line of a run that failed as a user mistake should (exit 2, no
    traceback); fails the test otherwise."""
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr[-2000:]
    return errors[0]


def evaluator_flags(*args):
    """The evaluator's flags parsed from the command line ``args``, in a fresh FlagValues
    (absl's own stays untouched)."""
    import copy
    from absl import flags
    import env as env_lib
    from evaluation import config
    env_lib.define_data_flags()  # shared with train.py, defined in absl's FlagValues
    env_lib.define_eval_flags()
    parsed = copy.deepcopy(flags.FLAGS)
    parsed.unparse_flags()
    if "checkpoint_path" not in parsed:  # not yet defined by importing the evaluator
        config.define_flags(parsed)
    parsed(["eval_image_classifier_mobilenet.py"] + list(args))
    return parsed


def exporter_flags(*args):
    """export_model.py's flags parsed from the command line ``args``, in a fresh
    FlagValues."""
    from absl import flags
    from export import config
    parsed = flags.FlagValues()
    config.define_flags(parsed)
    parsed(["export_model.py"] + list(args))
    return parsed


def evaluator_config(**given):
    """The EvalConfig the evaluator makes of the flags ``given`` ({name: value}, every
    other at its default): flags checked, the disk read, the config built."""
    from evaluation import config, sources
    f = evaluator_flags(*["--%s=%s" % item for item in sorted(given.items())])
    config.check_flags(f)
    return config.EvalConfig.from_flags(f, sources.read_sources(f))
