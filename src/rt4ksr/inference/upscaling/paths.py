"""Upscaling a path: a folder (recursive, resumable, a failing file listed and the rest done), an image or a
video, and the outcome of the run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rt4ksr.core.errors import ConfigValueError, UserError
from rt4ksr.core.files import is_partial, remove_stale_partials
from rt4ksr.data.io import IMAGE_EXTENSIONS
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.inference.upscaling.options import (
    VIDEO_EXTENSIONS,
    OutputOptions,
    check_output_folder,
    check_paths,
    output_name,
    same_file,
    single_target,
)
from rt4ksr.inference.upscaling.pictures import upscale_image
from rt4ksr.inference.upscaling.video import upscale_video

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a run did: files written, outputs kept from an earlier run, and failures (file: reason)."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    video: tuple[int, float] | None = None  # one video: frames and seconds, decoding and encoding included

    def summary(self) -> str:
        parts = [f"wrote {len(self.written)} file(s)"]
        if len(self.written) == 1:
            parts = [f"wrote {self.written[0]}"]
            if self.video:
                frames, seconds = self.video
                parts[0] += f" ({frames} frames in {seconds:.1f} s, {frames / max(seconds, 1e-9):.1f} fps)"
        elif self.written:
            parts[0] += f" under {_common_parent(self.written)}"
        if self.kept:
            parts.append(f"kept {len(self.kept)} existing (overwrite=true redoes them)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "; ".join(parts)


def _common_parent(paths: list[Path]) -> Path:
    parents = [p.parent.resolve().parts for p in paths]
    common = []
    for level in zip(*parents, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return Path(*common) if common else Path("/")


def upscale_folder(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None, batch_size: int = 4,
                   progress: bool = True) -> Outcome:
    """Every image and video below ``src`` (recursively) into ``dst`` with the same relative path. Outputs
    that exist are kept unless ``overwrite``, so a stopped run resumes where it was. A file that fails is
    listed in the report and the rest goes on."""
    opts = opts or OutputOptions()
    report = Outcome()
    check_output_folder(src, dst, opts)
    src_resolved, dst_resolved = src.resolve(), dst.resolve()
    in_place = dst_resolved == src_resolved
    nested = not in_place and dst_resolved.is_relative_to(src_resolved)  # outputs below the input: not inputs
    files = sorted(p for p in src.rglob("*") if p.is_file() and not is_partial(p))
    if nested:
        inside = [p for p in files if p.resolve().is_relative_to(dst_resolved)]
        if inside:
            log.info("skipped %d file(s) inside the output folder %s (outputs, not inputs)", len(inside), dst)
            files = [p for p in files if not p.resolve().is_relative_to(dst_resolved)]
    todo: list[tuple[Path, Path, bool]] = []
    for p in files:
        ext = p.suffix.lower()
        is_video = ext in VIDEO_EXTENSIONS
        if ext not in IMAGE_EXTENSIONS and not is_video:
            log.info("not an image or a video, skipped: %s", p)
            continue
        if in_place and p.stem.endswith(opts.suffix):
            log.info("an output of an earlier run (its name ends with %s), skipped: %s", opts.suffix, p)
            continue
        if is_video:
            opts.check_video(p.suffix)
        todo.append((p, dst / p.relative_to(src).parent / output_name(p, opts), is_video))
    inputs = {p.resolve() for p, _, _ in todo}
    for p, o, _ in todo:
        if o.resolve() in inputs or same_file(p, o):
            raise ConfigValueError(f"the output {o} would overwrite an input: give another output folder or a "
                                   "suffix (suffix=_x2)")
    if dst.is_dir():
        remove_stale_partials(dst)
    if not opts.overwrite:
        report.kept = [o for _, o, _ in todo if o.exists()]
        if report.kept:
            log.info("%d of %d outputs exist and are kept (overwrite=true redoes them)", len(report.kept), len(todo))
        todo = [(p, o, v) for p, o, v in todo if not o.exists()]
    bar = tqdm(todo, desc="upscale", unit="file", disable=not progress)
    with logging_redirect_tqdm(), bar:  # the files' own log lines print above the bar, not inside it
        for p, o, is_video in bar:
            try:
                if is_video:
                    upscale_video(up, p, o, batch_size, opts, progress=False)
                else:
                    upscale_image(up, p, o, opts)
                report.written.append(o)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                report.failed.append(f"{p}: out of GPU memory: tile=512 (or smaller) upscales it in tiles")
            except (UserError, OSError, ValueError) as e:  # this file's problem: list it, go on with the rest
                report.failed.append(failure(p, e))
            if report.failed:  # each failure is listed once, after the bar, when the run ends
                bar.set_postfix(failed=len(report.failed), refresh=False)
    return report


def failure(path: Path, e: BaseException) -> str:
    """One line for a file that failed: its path, then the reason, the path not said twice when the reason
    names it already."""
    reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return reason if str(path) in reason else f"{path}: {reason}"


def upscale_path(up: Upscaler, src: Path, dst: Path, opts: OutputOptions | None = None, batch_size: int = 4,
                 progress: bool = True) -> Outcome:
    """Dispatch on the input: a folder, an image or a video. ``dst`` is a file path (its suffix picks the
    format) or a folder. Returns what was written, kept and failed."""
    opts = opts or OutputOptions()
    check_paths(src, dst, opts)
    if src.is_dir():
        return upscale_folder(up, src, dst, opts, batch_size, progress)
    is_video = src.suffix.lower() in VIDEO_EXTENSIONS
    target = single_target(src, dst, opts)
    if target.parent.is_dir():
        remove_stale_partials(target.parent, stem=target.stem)
    report = Outcome()
    if is_video:
        start = time.perf_counter()
        frames = upscale_video(up, src, target, batch_size, opts, progress=progress)
        report.video = (frames, time.perf_counter() - start)
    else:
        upscale_image(up, src, target, opts)
    report.written.append(target)
    return report
