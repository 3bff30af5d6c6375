"""odenets: deep networks as numerical solvers of differential equations."""
__version__ = "0.1.0"
