"""Apache Kafka between the Portal and the CA (kafka-python): envelope, topics, relay, inbox."""
