"""Reports: one builder per command turns records from cost, trace and measure into a `Report` (JSON data, CSV
rows, human grids); `render` draws it as a table, JSON, CSV or Markdown. Nothing here prints."""
