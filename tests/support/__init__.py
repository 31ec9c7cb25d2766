"""What the tests share: stand-ins for the services pixhook talks to, misbehaving servers, builders
of requests and images, and waiting on a condition with a deadline."""
