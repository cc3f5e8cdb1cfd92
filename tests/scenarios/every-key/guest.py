print("from a file")
