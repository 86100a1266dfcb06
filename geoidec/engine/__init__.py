"""geoidec.engine"""
