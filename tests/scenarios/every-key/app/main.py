print("every-key app")
