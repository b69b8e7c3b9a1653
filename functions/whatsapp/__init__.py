"""The WhatsApp channel worker: consumes the whatsapp topic and sends through the WASender API."""
