"""The search behind ``quantization: auto``: which build to ship, chosen by measurement.

- :mod:`pipeline.search.space`: the candidates a search may try (declared in the quantizer's Params);
- :mod:`pipeline.search.sensitivity`: per-node quantization error on calibration data;
- :mod:`pipeline.search.mixed`: keep the most sensitive nodes in float until the quality gates hold;
- :mod:`pipeline.search.screen`: cheap fidelity/latency screening and the final interleaved run;
- :mod:`pipeline.search.choose`: the choice, a pure function of the recorded numbers;
- :mod:`pipeline.search.run`: the whole search, writing ``search.json``;
- :mod:`pipeline.search.record`: reading ``search.json`` back (metrics, report).
"""
