"""Results: the Parquet store, analysis in polars, reports with figures, and `lbbench validate`
(the engine against queueing theory)."""
