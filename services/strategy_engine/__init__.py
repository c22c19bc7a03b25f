"""Strategy engine: trigger policies, correlation into review cycles, the PDCA lifecycle."""
