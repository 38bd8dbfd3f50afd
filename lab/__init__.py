"""A lab of network namespaces with Debian's OpenVPN and our program, for interop tests,
`make run`, `make run-host` and `make bench`. Traffic stays inside namespaces this module creates
(addresses from 198.18.0.0/15); everything it starts is killed by PID on close."""
