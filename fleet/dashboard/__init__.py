"""The fleet dashboard's static files (HTML, script, SVG chart code, style)."""
