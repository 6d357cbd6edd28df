"""Image quality by the literature's convention: Y-channel PSNR/SSIM, crop = scale, per-image mean, as a
torchmetrics Metric."""
