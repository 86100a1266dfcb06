"""geoidec.inference"""
