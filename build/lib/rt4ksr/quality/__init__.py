"""Image quality by the literature's convention (Y channel, crop = scale, per-image mean) and benchmark evaluation."""
