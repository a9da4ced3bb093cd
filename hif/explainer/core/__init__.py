"""The torch code: subject model, TopK SAE, segments, decoding, attribution, feature edges, graph JSON and
the pipeline that strings them together (:func:`hif.explainer.core.pipeline.load_pipeline`)."""
