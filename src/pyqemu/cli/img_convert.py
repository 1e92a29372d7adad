"""``pyqemu-img convert``: copy images to a new (or existing, -n) image, as qemu-img 7.2.

Also home of small command-line helpers shared by the other block-operation
subcommands (commit, rebase, compare, dd, bench): cache-mode validation, --image-opts,
--object, opening with QEMU's messages.
"""

from __future__ import annotations

from pyqemu.block import ops
from pyqemu.block.driver import Image
from pyqemu.block.errors import BlockError
from pyqemu.cli.img_common import (
    CACHE_MODES,
    CliError,
    LongOpt,
    Progress,
    check_object,
    cvtnum,
    getopt_long,
    open_for_cli,
    print_help,
    run_command,
    warn,
)

TYPE_CHECKING = False

__all__ = [
    "apply_cache_mode",
    "check_cache_mode",
    "close_all",
    "handle_object",
    "main",
    "open_cli_image",
]

# ---- helpers shared by the img_* modules of this family ---------------------------------
def check_cache_mode(mode: str) -> bool:
    """True if ``mode`` is a cache mode bdrv_parse_cache_mode accepts."""
    return mode in CACHE_MODES


def handle_object(text: str, exit_code: int = 1) -> None:
    """--object: validated for syntax (no object type matters to these commands)."""
    from pyqemu.cli.qemuopts import QemuOptsError

    try:
        check_object([text])
    except CliError as exc:
        raise CliError(str(exc), exit_code) from exc
    except (QemuOptsError, BlockError) as exc:
        raise CliError(str(exc), exit_code) from exc


def _no_flush() -> None:
    return None


def apply_cache_mode(img: Image, mode: str) -> None:
    """cache=unsafe ignores flushes (qemu-img convert's default): make the host files of
    ``img`` skip fdatasync. Other modes keep the drivers' flushes."""
    if mode != "unsafe":
        return
    from pyqemu.block.file import ImageFile

    seen: set[int] = set()

    def visit(obj: object, depth: int) -> None:
        if depth > 3 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, ImageFile):
            obj.flush = _no_flush  # type: ignore[method-assign]
            return
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item, depth + 1)
            return
        attrs = getattr(obj, "__dict__", None)
        if attrs is None or isinstance(obj, Image) and depth > 0:
            return
        for value in list(attrs.values()):
            if isinstance(value, (ImageFile, list, tuple)) or (
                    hasattr(value, "__dict__") and hasattr(value, "file")):
                visit(value, depth + 1)

    visit(img, 0)


def open_cli_image(name: str, fmt: str | None, *, image_opts: bool = False,
                   readonly: bool = True, force_share: bool = False, backing: bool = True,
                   quiet: bool = False, unmap: bool = False) -> Image:
    """Open an image named on the command line (a filename, or an --image-opts string,
    parsed as every subcommand does by img_common.parse_image_opts)."""
    return open_for_cli(name, fmt, readonly=readonly, force_share=force_share,
                        backing=backing, quiet=quiet, image_opts=image_opts, unmap=unmap)


def close_all(images: list[Image]) -> None:
    """Close images in reverse order of opening, reporting failures as errors."""
    first: BaseException | None = None
    for img in reversed(images):
        try:
            img.close()
        except BlockError as exc:
            first = first or exc
    images.clear()
    if first is not None:
        raise first


def print_option_help(filename: str | None, fmt: str) -> int:
    """``-o help``: the creation options of ``fmt`` as qemu-img lists them (with the
    file protocol's when an output file name is given)."""
    from pyqemu.cli.img_create import print_option_help as create_help

    return create_help(filename, fmt)


def accumulate_options(current: str | None, new: str) -> str:
    """-o given several times: the lists are joined with ','."""
    from pyqemu.cli.qemuopts import is_valid_option_list

    if not is_valid_option_list(new):
        raise CliError(f"Invalid option list: {new}")
    return new if current is None else f"{current},{new}"


# ---- convert ------------------------------------------------------------------------------
_LONGOPTS = [
    LongOpt("help", False, "h"),
    LongOpt("object", True, "object"),
    LongOpt("image-opts", False, "image-opts"),
    LongOpt("force-share", False, "U"),
    LongOpt("target-image-opts", False, "target-image-opts"),
    LongOpt("salvage", False, "salvage"),
    LongOpt("target-is-zero", False, "target-is-zero"),
    LongOpt("bitmaps", False, "bitmaps"),
    LongOpt("skip-broken-bitmaps", False, "skip-broken-bitmaps"),
]


def _parse_create_options(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    from pyqemu.cli.qemuopts import QemuOptsError, parse

    try:
        opts = parse(text)
    except (QemuOptsError, BlockError) as exc:
        raise CliError(str(exc)) from exc
    return opts.as_dict()


def _load_snapshot(img: Image, sn_id: str | None, sn_name: str | None,
                   id_or_name: str | None) -> None:
    """-l: make the source read an internal snapshot (by id and/or name)."""
    try:
        if id_or_name is None:
            match = [s for s in img.snapshot_list()
                     if (sn_id is None or s.id == sn_id)
                     and (sn_name is None or s.name == sn_name)]
            if not match:
                raise BlockError("Can't find snapshot")
            id_or_name = match[0].id
        img.snapshot_load_tmp(id_or_name)
    except BlockError as exc:
        raise CliError(f"Failed to load snapshot: {exc}") from exc


def _supports(img: Image, method: str) -> bool:
    return getattr(type(img), method) is not getattr(Image, method)


def _convert(args: list[str]) -> int:
    opts, operands = getopt_long(args, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", _LONGOPTS)
    fmt: str | None = None
    out_fmt: str | None = None
    cache, src_cache = "unsafe", "writeback"
    out_baseimg: str | None = None
    backing_fmt: str | None = None
    options: str | None = None
    snapshot_name: str | None = None
    sn_opts: dict[str, str] | None = None
    min_sparse = 8 * 512
    explicit_min_sparse = False
    copy_range = compressed = progress = quiet = skip_create = force_share = False
    image_opts = tgt_image_opts = salvage = target_is_zero = bitmaps = False
    skip_broken = False
    coroutines = 8  # -m: qemu-img's default
    out_of_order = False  # -W
    rate_limit = 0
    for key, val in opts:
        v = val or ""
        if key == "h":
            return print_help()
        if key == "f":
            fmt = v
        elif key == "O":
            out_fmt = v
        elif key == "B":
            out_baseimg = v
        elif key == "C":
            copy_range = True
        elif key == "c":
            compressed = True
        elif key == "F":
            backing_fmt = v
        elif key == "o":
            options = accumulate_options(options, v)
        elif key == "l":
            if v.startswith("snapshot."):
                from pyqemu.cli.qemuopts import QemuOptsError, parse

                try:
                    parsed = parse(v).as_dict()
                except (QemuOptsError, BlockError) as exc:
                    raise CliError(f"{exc}\nFailed in parsing snapshot param '{v}'") from exc
                unknown = [k for k in parsed if k not in ("snapshot.id", "snapshot.name")]
                if unknown:
                    raise CliError(f"Invalid parameter '{unknown[0]}'\n"
                                   f"pyqemu-img: Failed in parsing snapshot param '{v}'")
                sn_opts = parsed
            else:
                snapshot_name = v
        elif key == "S":
            sval = cvtnum("buffer size for sparse output", v)
            if sval % 512 or sval // 512 > ops.MAX_BUF_SECTORS:
                raise CliError(
                    "Invalid buffer size for sparse output specified. Valid sizes are "
                    f"multiples of 512 up to {ops.MAX_BUF_SECTORS * 512}. Select 0 to "
                    "disable sparse detection (fully allocates output).")
            min_sparse = sval
            explicit_min_sparse = True
        elif key == "p":
            progress = True
        elif key == "t":
            cache = v
        elif key == "T":
            src_cache = v
        elif key == "q":
            quiet = True
        elif key == "n":
            skip_create = True
        elif key == "m":
            try:
                num = int(v, 0)
            except ValueError:
                num = 0
            if not 1 <= num <= 16:
                raise CliError("Invalid number of coroutines. Allowed number of coroutines "
                               "is between 1 and 16")
            coroutines = num
        elif key == "W":
            out_of_order = True  # (clusters are still allocated in order)
        elif key == "U":
            force_share = True
        elif key == "r":
            rate_limit = cvtnum("rate limit", v)
        elif key == "object":
            handle_object(v)
        elif key == "image-opts":
            image_opts = True
        elif key == "salvage":
            salvage = True
        elif key == "target-image-opts":
            tgt_image_opts = True
        elif key == "target-is-zero":
            target_is_zero = True
        elif key == "bitmaps":
            bitmaps = True
        elif key == "skip-broken-bitmaps":
            skip_broken = True

    if out_fmt is None and not tgt_image_opts:
        out_fmt = "raw"
    if skip_broken and not bitmaps:
        raise CliError("Use of --skip-broken-bitmaps requires --bitmaps")
    if compressed and copy_range:
        raise CliError("Cannot enable copy offloading when -c is used")
    if explicit_min_sparse and copy_range:
        raise CliError("Cannot enable copy offloading when -S is used")
    if copy_range and salvage:
        raise CliError("Cannot use copy offloading in salvaging mode")
    if tgt_image_opts and not skip_create:
        raise CliError("--target-image-opts requires use of -n flag")
    if skip_create and options:
        raise CliError("-o has no effect when skipping image creation")
    if target_is_zero and not skip_create:
        raise CliError("--target-is-zero requires use of -n flag")

    src_names = operands[:-1]
    out_filename = operands[-1] if len(operands) >= 2 else None
    if options is not None:
        from pyqemu.cli.qemuopts import has_help_option

        if has_help_option(options):
            if out_fmt:
                return print_option_help(out_filename, out_fmt)
            raise CliError("Option help requires a format be specified")
    if not src_names or out_filename is None:
        raise CliError("Must specify image file name")
    if not check_cache_mode(src_cache):
        raise CliError(f"Invalid source cache option: {src_cache}")

    if quiet:
        progress = False
    meter = Progress(progress, 1.0)
    meter.print(0, 100)
    images: list[Image] = []
    ok = False
    try:
        sources: list[Image] = []
        for name in src_names:
            img = open_cli_image(name, fmt, image_opts=image_opts, force_share=force_share,
                                 quiet=quiet)
            images.append(img)
            sources.append(img)
        if sn_opts is not None:
            _load_snapshot(sources[0], sn_opts.get("snapshot.id"),
                           sn_opts.get("snapshot.name"), None)
        elif snapshot_name is not None:
            if len(sources) > 1:
                raise CliError("No support for concatenating multiple snapshot")
            _load_snapshot(sources[0], None, None, snapshot_name)
        total = sum(ops.image_length(s) for s in sources)

        raw_opts: dict[str, str] = {}
        cls = None
        if not skip_create:
            from pyqemu.block import FORMATS, all_create_opts

            assert out_fmt is not None
            if out_fmt not in FORMATS:
                raise CliError(f"Unknown file format '{out_fmt}'")
            cls = FORMATS[out_fmt]
            raw_opts = _parse_create_options(options)
            known = {o.name for o in all_create_opts(cls)}
            for key in raw_opts:
                if key not in known:
                    raise CliError(f"Invalid parameter '{key}'")
            from pyqemu.block.driver import parse_opts

            try:  # value syntax errors come before anything is created, as in QEMU
                parse_opts(all_create_opts(cls), raw_opts, out_fmt)
            except BlockError as exc:
                raise CliError(str(exc)) from exc
            raw_opts.pop("size", None)
            if out_baseimg is not None:
                if "backing_file" not in known:
                    raise CliError(f"Backing file not supported for file format '{out_fmt}'")
                raw_opts["backing_file"] = out_baseimg
            if backing_fmt is not None:
                if "backing_fmt" not in known:
                    raise CliError("Backing file format not supported for file format "
                                   f"'{out_fmt}'")
                raw_opts["backing_fmt"] = backing_fmt
            if raw_opts.get("backing_file"):
                out_baseimg = raw_opts["backing_file"]
        target_has_backing = bool(out_baseimg)
        if target_is_zero and target_has_backing:
            raise CliError("Cannot use --target-is-zero when the destination image has a "
                           "backing file")
        if len(sources) > 1 and out_baseimg:
            raise CliError("Having a backing file for the target makes no sense when "
                           "concatenating multiple input images")
        if not skip_create and raw_opts.get("backing_file") and not raw_opts.get("backing_fmt"):
            raise CliError("Use of backing file requires explicit backing format")
        if compressed:
            if cls is not None and not cls.supports_compression:
                raise CliError("Compression not supported for this file format")
            if _truthy(raw_opts.get("encryption")) or raw_opts.get("encrypt.format"):
                raise CliError("Compression and encryption not supported at the same time")
            prealloc = raw_opts.get("preallocation")
            if prealloc and prealloc != "off":
                raise CliError("Compression and preallocation not supported at the same "
                               "time")
        if bitmaps:
            if len(sources) > 1:
                raise CliError("Copying bitmaps only possible with single source")
            _check_bitmaps(sources[0], skip_broken)

        if not skip_create:
            from pyqemu.block import create_image

            assert out_fmt is not None
            try:
                create_image(out_fmt, out_filename, total, raw_opts)
            except BlockError as exc:
                raise CliError(f"{out_filename}: error while converting {out_fmt}: {exc}") \
                    from exc
        if not check_cache_mode(cache):
            raise CliError(f"Invalid cache option: {cache}")
        if skip_create:
            target = open_cli_image(out_filename, out_fmt, image_opts=tgt_image_opts,
                                    readonly=False, quiet=quiet)
        else:
            target = open_for_cli(out_filename, out_fmt, readonly=False, quiet=quiet)
        images.append(target)
        apply_cache_mode(target, cache)
        if bitmaps and not _stores_bitmaps(target):
            raise CliError(f"Format driver '{target.format_name}' does not support bitmaps")
        if compressed and not target.supports_compression:
            raise CliError("Compression not supported for this file format")
        if skip_create and ops.image_length(target) < total:
            raise CliError("output file is smaller than input file")
        try:
            ops.convert(sources, target, min_sparse=min_sparse, compressed=compressed,
                        target_is_new=not skip_create, target_has_backing=target_has_backing,
                        target_is_zero=target_is_zero, salvage=salvage,
                        rate_limit=rate_limit, progress=meter.print, coroutines=coroutines,
                        out_of_order=out_of_order,
                        warn=None if quiet else warn)
        except BlockError as exc:
            raise CliError(str(exc)) from exc
        if bitmaps:
            _copy_bitmaps(sources[0], target)
        ok = True
    finally:
        try:
            close_all(images)
        finally:
            if ok:
                meter.print(100, 0)
            meter.end()
    return 0


def _truthy(text: str | None) -> bool:
    return text is not None and text.lower() in ("on", "yes", "true", "y")


def _stores_bitmaps(image: Image) -> bool:
    """Whether ``image`` can hold persistent dirty bitmaps (qcow2 v3 only)."""
    from pyqemu.block.qcow2 import Qcow2Image

    return isinstance(image, Qcow2Image) and image.header.version >= 3


def _check_bitmaps(src: Image, skip_broken: bool) -> None:
    """convert_check_bitmaps: the source has bitmap support and, unless
    --skip-broken-bitmaps, no inconsistent (in-use) bitmap. QEMU walks its bitmap list,
    which holds a qcow2 image's bitmaps in reverse directory order."""
    from pyqemu.block.qcow2 import Qcow2Image
    from pyqemu.block.qcow2.format import BME_FLAG_IN_USE

    if not isinstance(src, Qcow2Image):
        raise CliError("Source lacks bitmap support")
    for bm in reversed(src.bitmaps):
        if bm.flags & BME_FLAG_IN_USE and not skip_broken:
            raise CliError(f"Cannot copy inconsistent bitmap '{bm.name}'\n"
                           "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' "
                           "to delete it")


def _copy_bitmaps(src: Image, target: Image) -> None:
    """convert_copy_bitmaps: each consistent persistent bitmap of ``src`` is added to
    ``target`` (same name, granularity and enabled state) and its bits merged in; the
    inconsistent ones are skipped with a warning. The directory order is the source's."""
    from pyqemu.block.qcow2 import Qcow2Image
    from pyqemu.block.qcow2.bitmap import Bitmap, load_bitmaps, store_bitmaps

    assert isinstance(src, Qcow2Image) and isinstance(target, Qcow2Image)
    existing = load_bitmaps(target)
    names = {b.name for b in existing}
    copied: list[Bitmap] = []
    for b in reversed(load_bitmaps(src)):
        if b.in_use:
            warn(f"Skipping inconsistent bitmap '{b.name}'")
            continue
        if b.name in names:
            raise CliError(f"Failed to create bitmap {b.name}: Bitmap already exists: "
                           f"{b.name}")
        new = Bitmap(b.name, b.granularity, enabled=b.enabled)
        new.merge_from(b, src.virtual_size)
        copied.append(new)
    store_bitmaps(target, existing + copied[::-1])


def main(args: list[str]) -> int:
    """Entry point called by the pyqemu-img dispatcher (arguments after "convert")."""
    return run_command(_convert, args)

