"""Reference apps and functions that Dashtam's numbers are divided by.

Each reference is the least code that does the same job, run the same way as Dashtam, so a
ratio shows what Dashtam's own code costs.
"""
