"""geoidec.data"""
