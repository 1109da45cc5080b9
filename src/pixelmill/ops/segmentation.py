"""segmentation ops."""
