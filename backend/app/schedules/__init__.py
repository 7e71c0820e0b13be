"""Schedules: the periodic duties and users' report schedules, rows fired once per due time."""
