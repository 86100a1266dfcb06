"""geoidec command line (installed as geoidec.cli)."""
