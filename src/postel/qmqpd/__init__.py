"""qmqpd"""
