"""Local fake providers: SendGrid v3 Mail Send and the WASender API, with fault injection and a listing of
what "went out". The sandbox of the local stack and of ``helm test``; never a production dependency."""
