"""Padding modes, sliding windows, convolution and pooling."""
