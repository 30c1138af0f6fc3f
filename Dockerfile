FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamapp streamapp
COPY agents agents
COPY models models
COPY tables tables
COPY lake lake
COPY dashboards dashboards
RUN pip install --no-cache-dir .
ENV STREAMAPP_VAR_DIR=/var/streamapp
EXPOSE 6066
CMD ["faust", "-A", "streamapp", "worker", "-l", "info"]
