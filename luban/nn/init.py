"""Parameter initializers (torch.nn.init)."""
