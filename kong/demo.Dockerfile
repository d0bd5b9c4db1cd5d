# The demo's other two services: the mock authorization server and the demo MCP server
# (both from tests/harness). Build from the repository root.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md /app/
COPY kong_plugins /app/kong_plugins
RUN pip install --no-cache-dir '/app[test]'
COPY tests /app/tests
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
