"""The report: scan result files into report.json, then render report.md and charts from that file."""
