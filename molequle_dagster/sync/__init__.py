"""How a sync folds Marketo's feeds into the lake: run kinds, windows, plans, day files, overlays, healing."""
