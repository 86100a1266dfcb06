"""geoidec.losses"""
