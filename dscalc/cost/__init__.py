"""The exact cost engine: closed forms, the layer kinds, records and declared networks. Pure Python, no torch.

Everything above (trace, measure, report, cli) builds on these records; nothing here imports them.
"""
