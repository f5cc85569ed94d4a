"""The seed's single-dash, snake_case flags (`-store_type minio`) mapped onto `--store-type`."""

from collections.abc import Iterable, Sequence


def normalize_seed_args(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """Rewrite `-port`, `-store_type`, `--upload_dir` into `--port`, `--store-type`, `--upload-dir`.

    Only flags in `known` (kebab-case names without dashes) are rewritten, so values that
    start with a dash and short options pass through untouched.
    """
    names = set(known)
    out: list[str] = []
    for arg in argv:
        if (arg.startswith("-") and not arg.startswith("--")) or (
            arg.startswith("--") and "_" in arg
        ):
            flag, eq, value = arg.lstrip("-").partition("=")
            kebab = flag.replace("_", "-")
            if kebab in names:
                out.append(f"--{kebab}{eq}{value}")
                continue
        out.append(arg)
    return out
