"""The local stack `lakehouse up` and the tests start: every process on 127.0.0.1, free
ports, state under one directory (`stack`, `ports`), and the sample data (`sample_data`)."""
