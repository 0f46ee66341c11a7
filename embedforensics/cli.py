"""The ``embedforensics`` command: run | validate | embed | heads train | finetune train |
compare | ls | env.

User mistakes are printed as one sentence naming the file and key, with exit code 2;
``--debug`` shows the traceback instead. Bugs in embedforensics exit with code 1 and a
traceback, because those are ours to fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from embedforensics.errors import UserError

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedforensics",
        description="Can these data sources be told apart in a foundation model's embedding "
                    "space? Run a YAML recipe and get a report with the evidence.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="only warnings and errors, no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name: str, **kwargs):
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    def recipe_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("recipe", help="path to a YAML recipe")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY.PATH=VALUE",
                       help="override a recipe value, e.g. --set sources[0].sample=100 "
                            "(repeatable; beats the recipe and its includes)")

    p_run = sub.add_parser("run", help="run a recipe and write results.json, report.html, "
                                       "report.md")
    recipe_args(p_run)
    p_run.add_argument("--output", "-o", help="output folder (default: output.dir or "
                                              "runs/<name>, both relative to the recipe's "
                                              "folder)")
    p_run.add_argument("--no-cache", action="store_true", help="do not read or write the "
                                                               "embedding cache")
    p_run.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="embed with N data-parallel processes: re-launches this command "
                            "under 'accelerate launch' (on the CPU when there is no GPU)")

    p_val = sub.add_parser("validate", help="check a recipe without loading any model and print "
                                            "it resolved")
    recipe_args(p_val)

    p_embed = sub.add_parser("embed", help="embed a recipe's sources and export them "
                                           "(embeddings.safetensors + records.jsonl)")
    recipe_args(p_embed)
    p_embed.add_argument("--output", "-o", required=True, help="output folder")
    p_embed.add_argument("--no-cache", action="store_true")
    p_embed.add_argument("--num-processes", type=int, default=None, metavar="N",
                         help="as for 'run'")

    p_heads = sub.add_parser("heads", help="classifier heads on cached embeddings (for "
                                           "'compare')")
    heads_sub = p_heads.add_subparsers(dest="heads_command", required=True, metavar="ACTION")
    p_train = heads_sub.add_parser("train", parents=[common],
                                   help="train the recipe's heads: groups over their seeds")
    recipe_args(p_train)
    p_train.add_argument("--no-cache", action="store_true", help="do not read or write the "
                                                                 "embedding cache")

    p_ft = sub.add_parser("finetune", help="fine-tune Hugging Face models over seeds (for "
                                         "'compare'; multi-GPU: 'accelerate launch -m "
                                         "embedforensics finetune train ...')")
    ft_sub = p_ft.add_subparsers(dest="finetune_command", required=True, metavar="ACTION")
    p_ft_train = ft_sub.add_parser("train", parents=[common],
                                   help="fine-tune the recipe's finetune groups over their "
                                        "seeds (one checkpoint per seed)")
    recipe_args(p_ft_train)
    p_ft_train.add_argument("--no-cache", action="store_true", help="do not read or write "
                                                                    "the embedding cache")

    p_cmp = sub.add_parser("compare", help="compare candidate checkpoints with a reference "
                                           "ensemble (α̂, accuracy, churn, calibration)")
    recipe_args(p_cmp)
    p_cmp.add_argument("--output", "-o", help="output folder (default: compare.dir or "
                                              "runs/<name>/compare, relative to the recipe's "
                                              "folder)")
    p_cmp.add_argument("--no-cache", action="store_true", help="do not read or write the "
                                                               "embedding and soft-output caches")

    p_ls = sub.add_parser("ls", help="list registered models, sources, transforms, probes and "
                                     "comparators")
    p_ls.add_argument("kind", nargs="?", choices=list(_LISTED))

    p_models = sub.add_parser("models", help="bundled offline models: list them (and models "
                                             "already cached), or prepare one")
    models_sub = p_models.add_subparsers(dest="models_command", required=True,
                                         metavar="ACTION")
    models_sub.add_parser("ls", parents=[common], help="bundled models (ready, needs "
                          "prepare, package missing) and models in the Hugging Face cache")
    p_prep = models_sub.add_parser("prepare", parents=[common],
                                   help="convert a bundled model once into the cache")
    p_prep.add_argument("name", help="e.g. multilingual-e5-small or bundled:gemma-3-270m")

    sub.add_parser("env", help="print versions and devices (for bug reports)")
    return parser


def _relaunch(argv: Sequence[str], n: int) -> int:
    """Run this same command again under ``accelerate launch`` with ``n`` processes."""
    import subprocess

    if n < 1:
        raise UserError(f"--num-processes must be at least 1; got {n}.")
    rest: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not arg.startswith("--num-processes="):
            rest.append(arg)
    from embedforensics.engine.distributed import launch_command

    cmd, env = launch_command(n, rest)
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun starts each process single-threaded
        import torch

        # read back by study.pipeline.restore_threads for the probes after the embedding
        env["EMBEDFORENSICS_THREADS"] = str(torch.get_num_threads())
    print("launching: " + " ".join(f"{k}={v}" for k, v in env.items()) + " "
          + " ".join(cmd[2:]), file=sys.stderr)
    return subprocess.run(cmd, check=False, env={**os.environ, **env}).returncode


def accelerate_ran_one_process() -> bool:
    """True when ``accelerate launch --num_processes N`` (N > 1) started this command as a
    single process: on the CPU accelerate's launcher needs MPI for more than one, and
    without it runs the command once (it sets the rendezvous address, not a world size)."""
    from embedforensics.engine.distributed import launched

    return ("ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ
            and not launched())


def _secondary_process() -> bool:
    """True in an accelerate worker other than the main one (it embeds, then stops)."""
    from embedforensics.engine.distributed import accelerate_state, launched

    if not launched():
        return False

    if accelerate_state().is_main_process:
        return False
    logging.getLogger().setLevel(logging.WARNING)  # one process reports
    return True


def check_output_dir(path: str | os.PathLike[str] | None, what: str = "--output") -> None:
    """Refuse, before any work, an output folder that cannot be one: an existing file, a
    path under a file, or a folder that cannot be written."""
    if path is None:
        return
    from pathlib import Path

    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{what} '{path}' is an existing file, not a folder; give a folder "
                        "(it is created if missing).")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{what} '{path}' is inside '{existing}', which is a file, not a "
                        "folder.")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} '{path}': the folder '{existing}' is not writable.")


def _cmd_run(args: argparse.Namespace) -> int:
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import embed, run

    check_output_dir(args.output)
    loaded = load_recipe(args.recipe, args.overrides)
    if args.output is None and loaded.recipe.output.dir:
        configured = os.path.expanduser(loaded.recipe.output.dir)
        check_output_dir(os.path.join(loaded.base_dir, configured),
                         f"{loaded.file_of('output.dir')}: output.dir")
    if _secondary_process():  # share the embedding; the main process does the rest
        embed(loaded, use_cache=not args.no_cache, progress=False, assemble=False)
        return 0
    result = run(loaded, output=args.output, use_cache=not args.no_cache,
                 progress=not args.quiet)
    default = None if args.output or loaded.recipe.output.dir else \
        f"runs/{loaded.recipe.name} next to the recipe (the default; -o or output.dir " \
        "choose another)"
    _print_outcome(result, default)
    return 0


def _print_outcome(result, default_note: str | None) -> None:
    """The summary table, the verdict, then where the reports are (as lm-eval and MTEB end
    a run)."""
    from embedforensics.report.summary import lead_verdict, summary_text

    out = result.output_dir
    print()
    print(summary_text(result.results))
    print()
    print(f"Finding: {lead_verdict(result.results)}")
    print(f"Report: {out / 'report.html'}")
    print(f"Also: {out / 'report.md'}, {out / 'results.json'}")
    if default_note:
        print(f"Folder: {default_note}")


def _cmd_validate(args: argparse.Namespace) -> int:
    from embedforensics.models.resolve import effective_spec, resolve_model
    from embedforensics.recipe import dump_recipe, load_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    for override in loaded.overrides:
        print(f"# override: {override}", file=sys.stderr)
    if loaded.recipe.model is None:  # a compare-only recipe: nothing is embedded
        sys.stdout.write(dump_recipe(loaded.recipe))
        _print_power_warnings(loaded.recipe)
        print(f"# {args.recipe}: valid ({len(loaded.recipe.sources)} sources, no embedding "
              "model)", file=sys.stderr)
        return 0
    # show the model settings that will be used: "auto" ones filled by the family rule
    resolved = resolve_model(loaded.recipe.model, base_dir=loaded.base_dir,
                             file=loaded.file_of("model.id"), fingerprint=False)
    model, auto = effective_spec(loaded.recipe.model, resolved,
                                 file=loaded.file_of("model.pooling"))
    sys.stdout.write(dump_recipe(loaded.recipe.model_copy(update={"model": model})))
    _print_power_warnings(loaded.recipe)
    if auto:
        print(f"# model family '{resolved.family}' set: "
              + ", ".join(f"{k}={v!r}" for k, v in auto.items()), file=sys.stderr)
    print(f"# {args.recipe}: valid ({len(loaded.recipe.sources)} sources, "
          f"{len(loaded.recipe.probes)} probes)", file=sys.stderr)
    return 0


def _print_power_warnings(recipe) -> None:
    """Comparison methods that cannot reject with the recipe's reference ensemble."""
    from embedforensics.compare.power import recipe_warnings

    for warning in recipe_warnings(recipe):
        print(f"# warning: {warning}", file=sys.stderr)


EXPORT_MMAP_BYTES = 64 << 20
"""``embed`` assembles results larger than this in memory-mapped files, not in RAM."""


def _cmd_embed(args: argparse.Namespace) -> int:
    from embedforensics.export import export_embeddings
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import embed

    check_output_dir(args.output)
    loaded = load_recipe(args.recipe, args.overrides)
    if _secondary_process():
        embed(loaded, use_cache=not args.no_cache, progress=False, assemble=False)
        return 0
    # the export is written in blocks; results over 64 MiB are assembled on disk too
    embeddings = embed(loaded, use_cache=not args.no_cache, progress=not args.quiet,
                       mmap_bytes=EXPORT_MMAP_BYTES)
    paths = export_embeddings(embeddings, args.output)
    print(f"Wrote {len(embeddings)} embeddings ({embeddings.X.shape[1]}-d) to "
          + ", ".join(str(p) for p in paths))
    return 0


def _cmd_heads(args: argparse.Namespace) -> int:
    from embedforensics.runner import train_heads

    dirs = train_heads(args.recipe, overrides=args.overrides, use_cache=not args.no_cache,
                       progress=not args.quiet)
    groups = sorted({d.parent for d in dirs})
    print(f"Trained or reused {len(dirs)} heads in {len(groups)} groups: "
          + ", ".join(f"{g} ({sum(d.parent == g for d in dirs)})" for g in groups))
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from embedforensics.engine.distributed import accelerate_state, launched
    from embedforensics.runner import finetune

    main_process = not launched() or accelerate_state().is_main_process
    if not main_process:
        logging.getLogger().setLevel(logging.WARNING)  # one process reports
    dirs = finetune(args.recipe, overrides=args.overrides, use_cache=not args.no_cache,
                    progress=not args.quiet and main_process)
    if main_process:
        groups = sorted({d.parent for d in dirs})
        print(f"Fine-tuned or reused {len(dirs)} checkpoints in {len(groups)} groups: "
              + ", ".join(f"{g} ({sum(d.parent == g for d in dirs)})" for g in groups))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from embedforensics.runner import compare

    check_output_dir(args.output)
    result = compare(args.recipe, overrides=args.overrides, output=args.output,
                     use_cache=not args.no_cache, progress=not args.quiet)
    spec = result.results.recipe.resolved.get("compare") or {}
    default = None if args.output or spec.get("dir") else \
        f"runs/{result.results.recipe.name}/compare next to the recipe (the default; -o " \
        "or compare.dir choose another)"
    _print_outcome(result, default)
    return 0


_LISTED = ("models", "sources", "transforms", "probes", "comparators")


def _cmd_ls(args: argparse.Namespace) -> int:
    from embedforensics import registry as registries

    for kind in [args.kind] if args.kind else list(_LISTED):
        print(f"{kind}:")
        registry = getattr(registries, kind.upper())
        width = max(len(e.name) for e in registry.entries())
        for entry in registry.entries():
            print(f"  {entry.name:<{width}}  {entry.description}")
        if kind == "models":
            print(f"  {'<hub id or folder>':<{width}}  Any Hugging Face encoder or decoder "
                  "LLM, e.g. intfloat/multilingual-e5-small, mistralai/Mistral-7B-v0.1 or "
                  "./my-model ('embedforensics models ls' shows what is on disk)")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import time

    from embedforensics.models import listing

    if args.models_command == "ls":
        print(listing.format_rows(listing.all_rows()))
        return 0
    started = time.perf_counter()
    path = listing.prepare(args.name)
    print(f"{args.name}: ready in {path} ({time.perf_counter() - started:.1f} s)")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    import platform

    from embedforensics.runner import package_versions

    for name, ver in package_versions().items():
        print(f"{name}: {ver or 'not installed'}")
    print(f"platform: {platform.platform()}")
    try:
        import torch

        print(f"torch threads: {torch.get_num_threads()}")
        print(f"cuda available: {torch.cuda.is_available()}")
        for i in range(torch.cuda.device_count()):
            print(f"  cuda:{i}: {torch.cuda.get_device_name(i)}")
        mps = getattr(torch.backends, "mps", None)
        print(f"mps available: {bool(mps and mps.is_available())}")
    except ImportError:
        print("torch: not importable")
    for var in ("HF_HOME", "HF_HUB_OFFLINE", "EMBEDFORENSICS_CACHE", "CUDA_VISIBLE_DEVICES"):
        if var in os.environ:
            print(f"{var}={os.environ[var]}")
    return 0


_COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "embed": _cmd_embed, "ls": _cmd_ls,
             "env": _cmd_env, "heads": _cmd_heads, "finetune": _cmd_finetune,
             "compare": _cmd_compare,
             "models": _cmd_models}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "huggingface_hub",
                  "transformers", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        n = getattr(args, "num_processes", None)
        from embedforensics.engine.distributed import launched

        if n is not None and n != 1 and not launched():
            return _relaunch(list(sys.argv[1:] if argv is None else argv), n)
        if args.command in ("run", "embed") and accelerate_ran_one_process():
            print("warning: 'accelerate launch' started one process, not several (on the "
                  "CPU its launcher needs MPI for more), so this run embeds in one process "
                  "(recorded as processes: 1); for N CPU processes use "
                  f"'embedforensics {args.command} --num-processes N ...' instead.",
                  file=sys.stderr)
        return _COMMANDS[args.command](args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
