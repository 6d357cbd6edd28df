"""Deployment: loading a model for inference, upscaling files and videos, exports, and timing."""
