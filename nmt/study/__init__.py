"""The study: sweeps, reports, plots and the metrics they share with evaluation."""
