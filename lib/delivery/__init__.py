"""What a channel worker does: the consume loop that owns offsets (``worker``) around one message's pipeline
(``pipeline``). The API side (``lib.services``) never imports these, nor they it."""
