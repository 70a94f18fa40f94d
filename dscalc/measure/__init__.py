"""Measured truth: timing settings, the timer (torch.utils.benchmark), torch modules for a layer, device
ceilings and their cache, the roofline, latency rows and the sweep. torch is imported inside the functions that
run it, so importing this package costs nothing."""
