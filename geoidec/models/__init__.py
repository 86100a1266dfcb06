"""geoidec.models"""
