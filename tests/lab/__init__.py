"""Network-namespace test lab: pods, a node, and a fake internet. See README.md here."""
