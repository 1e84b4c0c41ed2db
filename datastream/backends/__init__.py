"""Public import path of the storage backends: ``datastream.backends.<name>.Backend``.

Submodules are imported on demand so that optional clients (pymongo, influxdb) are only needed
when their backend is used.
"""
