"""Client-side load for the cutover drill: a steady-rate generator with a realistic mix, the
ids it draws from, and the lost-write audit of what it was told was written."""
