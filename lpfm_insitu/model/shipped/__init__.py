"""Models shipped with the package (safetensors files with their model cards)."""
