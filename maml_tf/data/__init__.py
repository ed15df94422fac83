"""Task datasets: sinusoid, Omniglot, MiniImagenet, and the tools that prepare them."""
