FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY app.py cli.py settings.py embedded.py ./
COPY schema schema
COPY models models
COPY resolvers resolvers
COPY jobs jobs
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV ENVIRONMENT=production HOST=0.0.0.0 PORT=8000 DATA_DIR=/data
EXPOSE 8000
CMD ["roster", "serve"]
