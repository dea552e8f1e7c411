"""Mail flow: accepting, storing and sending messages.

Recipient routing and durable delivery (RFC 5321), the outbound queue with DSNs
(RFC 3464) and the relay, inbound SPF/DKIM/DMARC (RFC 7208, 6376, 7489, ARC 8617),
DKIM signing (RFC 6376, 8463), the cached DNS resolver, the async mailbox service the
IMAP front-end uses, and the webmail's decisions.
"""
