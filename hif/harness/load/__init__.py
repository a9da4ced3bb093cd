"""The load runner: settings -> engine (chat lane, trace poller, pacing) -> result files and summary.json."""
