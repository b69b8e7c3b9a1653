"""The email channel worker: consumes the email topic and sends through SendGrid."""
