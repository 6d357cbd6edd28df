"""Upscaling files: an image, a folder (recursive, resumable) or a video (threaded decode, model, encode).

Nothing is dropped silently: 16-bit images stay 16-bit, grayscale stays single-channel and neutral, alpha
is kept (upscaled by the model, as Real-ESRGAN does, or by bicubic interpolation), EXIF orientation is
honoured. A 10-bit video stays 10-bit where the output's encoder can write it; its audio tracks are copied, or
re-encoded in their own channel layout when the output container cannot hold their codec; its subtitle tracks,
attachments and chapters are copied where the container holds them, and what it cannot hold is named. A video
that ends before its container says is refused. Every output is written atomically, so an interrupted run
never leaves a truncated file under its name.

One module per job: ``options`` (how the model runs, what is written and where, checked up front), ``build``
(the ``Upscaler`` those options describe), ``pictures`` (one image), ``streams`` (a video's streams in the
output container), ``video`` (the threaded transcoder) and ``paths`` (a folder, an image or a video, and the
run's outcome).
"""

from rt4ksr.inference.upscaling.build import build_upscaler
from rt4ksr.inference.upscaling.options import VIDEO_EXTENSIONS, OutputOptions, UpscaleOptions, check_paths
from rt4ksr.inference.upscaling.paths import Outcome, upscale_folder, upscale_path
from rt4ksr.inference.upscaling.pictures import upscale_image, upscale_picture
from rt4ksr.inference.upscaling.video import DamagedVideoError, upscale_video

__all__ = ["VIDEO_EXTENSIONS", "DamagedVideoError", "Outcome", "OutputOptions", "UpscaleOptions", "build_upscaler",
           "check_paths", "upscale_folder", "upscale_image", "upscale_path", "upscale_picture", "upscale_video"]
