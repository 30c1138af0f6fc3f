"""The IoT vital-signs pipeline's pure parts: validation, pseudonyms, alert rules, windows, device status."""
