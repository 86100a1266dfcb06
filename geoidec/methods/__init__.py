"""geoidec.methods"""
