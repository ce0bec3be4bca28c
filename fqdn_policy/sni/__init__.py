"""What a new TCP connection presents in its first bytes: the TLS ClientHello's server_name or the HTTP
Host header, read from whole IP packets without sockets or netfilter (sans-I/O, like dnsproxy.wire).

segment.py takes a raw IPv4/IPv6 packet to a TCP Segment, reassembly.py holds one flow's first payload
bytes in sequence order, inspect.py decides from those bytes (clienthello.py and httphost.py parse).
"""
