"""Pure generators of realistic streams (orders, IoT vitals, machines); no Kafka here."""
